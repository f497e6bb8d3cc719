from clf.cli import main

main()
