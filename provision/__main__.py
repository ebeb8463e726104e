from provision.cli.run import main

main()
