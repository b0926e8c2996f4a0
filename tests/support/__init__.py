"""What the tests share: servers and worker processes they start, fake providers, accounts, waits
and the browser."""
