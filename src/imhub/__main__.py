from imhub.cli import main

main()
