"""What the demo, the benchmarks and the integration tests share to run the service on a real broker.

One place for each piece: settings and their environment (:mod:`devkit.settings`), topic set-up
(:mod:`devkit.topics`), the service as a child process (:mod:`devkit.process`), committed readers
(:mod:`devkit.reading`), sized streams and their publishing (:mod:`devkit.streams`,
:mod:`devkit.publishing`), ports and health probes (:mod:`devkit.ports`), and the demo (:mod:`devkit.demo`).
"""
