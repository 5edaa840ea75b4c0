from crm.cli import main

if __name__ == "__main__":  # spawned processes import this module without running it
    main()
