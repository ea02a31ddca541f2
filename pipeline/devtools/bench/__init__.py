"""The benchmarks behind `ardary-pipeline bench`: plain run functions and their helpers.

Each `run_*_bench` prints its figures through the `echo` it is given and ends with its
`RATIO name=value` lines; `pipeline.cli.bench` maps the command's flags onto them.
"""
