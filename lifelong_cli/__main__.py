from lifelong_cli.cli.app import entry

entry()
