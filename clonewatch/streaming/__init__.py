"""The streaming deployment: Kafka topics, the Faust worker app and its batch processing.

Gateways (through ``clonewatch ship``) produce access events to the access topic, keyed
by client id; ``clonewatch worker`` processes run the Faust app of :mod:`clonewatch.streaming.app`
and push decisions to the compacted decisions topic. See docs/streaming.md.
"""
