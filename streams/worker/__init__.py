"""`fleetwatch worker`: the faust-streaming app that runs the detection core on the telemetry topic.

`engine` is the broker-free part (a fix, an order or a clock tick for one vehicle -> the records
to publish); `state_store` owns how a vehicle's state is encoded in the changelog-backed table;
`app` wires both into faust (agents stay thin); `cli` is the command.
"""
