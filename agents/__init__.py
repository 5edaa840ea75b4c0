"""The Faust agents: the only place that wires stream, models and store together."""
