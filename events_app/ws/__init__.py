"""The WebSocket long connection: lark-oapi's client, extended (`client`), and the process
that runs one per application (`listener`)."""
