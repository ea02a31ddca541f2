"""`bench chaos`: the whole pipeline on a three-broker cluster under load and faults, checked
against ledgers the pipeline does not keep (see `pipeline.devtools.chaos.run`)."""
