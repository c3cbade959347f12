"""The officer's field client: publish live video and audio over WHIP, receive and acknowledge
directives over the dispatch server's websocket."""
