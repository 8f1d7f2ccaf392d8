"""How a client process reaches circusd: the transport layer.

Used by the clients (circus.client, circus.consumer, circusctl), the plugin
SDK, circusd-stats, circus.stats.client and the console; it never imports a
daemon module.

- endpoints: endpoint parsing, once (connectable addresses, socket
  addresses, ssh forward targets);
- dealer: the Dealer contract of the command channel, MAX_MESSAGE_SIZE,
  open_dealer();
- zmtp: ZMTPDealer, plain Python (no pyzmq import: circusctl stays fast);
- pyzmq: PyzmqDealer, CURVE set-up, client_socket();
- subscriber: Subscriber, one way to open a SUB socket on circusd's events
  or stats, and decode_event();
- sshtunnel: reaching a remote circusd through `ssh -L`.

Nothing is imported here: importing one module must not import the others.
"""
