"""The one room that knows the insides of faust-streaming, mode, aiokafka and kafka-python.

Importing this package checks that the installed client versions are the ones its adaptations
were verified against (`pipeline.kafka.versions`). The full list of adaptations is in
`docs/architecture.md` (section "The Kafka boundary").
"""

from pipeline.kafka.versions import check_versions

check_versions()
