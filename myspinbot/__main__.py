from myspinbot.cli.main import cli

cli()
