"""One module per `harness` command: its parser (`add_parser`) and its `main(args) -> int`
(parse, call the library, print). harness/cli.py assembles them; nothing else imports them."""
