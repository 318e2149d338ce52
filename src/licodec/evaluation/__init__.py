"""Evaluation and benchmarking: ``licodec eval`` and ``licodec bench``.

- `bdrate`   Bjøntegaard delta rate (monotone cubic interpolation in log-rate)
- `quality`  PSNR (RGB, 8-bit) and MS-SSIM of decoded images
- `codecs`   classical codecs (JPEG, WebP, AVIF, JPEG XL, JPEG 2000, HEVC, VVC): bytes in, bytes out
- `run`      the eval driver: every setting is a real file written to disk and decoded back
- `report`   results.json, summary.md, RD plots and report.html
- `bench`    latency (with the entropy-coding share), parameters, FLOPs, peak memory
- `cli`      the arguments of ``licodec eval`` / ``licodec bench``

Nothing here is imported by the core package, and the optional libraries (the ``[eval]``
extra) are imported only when used.
"""
