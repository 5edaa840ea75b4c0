"""Settings, Faust topics, codecs, the producer SDK and the embedded dev stack launcher."""
