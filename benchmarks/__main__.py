"""``python -m benchmarks`` (and ``orders bench``): the benchmark's command line."""

from benchmarks.run import main

main()
