from lifelong_cli.cli.app import main

main()
