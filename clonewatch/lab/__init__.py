"""Laboratory tools, not the product: the red-team traffic simulator (``clonewatch simulate``)
and the development Kafka launcher (``clonewatch kafka``). Nothing in the detection path
imports them."""
