"""The whole pipeline on one machine: `ardary-pipeline demo` and `ardary-pipeline dev`."""
