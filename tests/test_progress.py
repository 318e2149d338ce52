from licodec.progress import report, reporting


def test_reports_reach_the_listener_only_inside_the_block():
    seen = []
    report("analysis", 0, 1)  # nobody listens: nothing happens
    with reporting(lambda *a: seen.append(a)):
        report("analysis", 1, 4)
        with reporting(lambda *a: None):  # an inner listener replaces the outer one meanwhile
            report("synthesis", 2, 4)
        report("synthesis", 3, 4)
    report("synthesis", 4, 4)
    assert seen == [("analysis", 1, 4), ("synthesis", 3, 4)]
