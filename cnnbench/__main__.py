from cnnbench.cli import main

if __name__ == "__main__":  # not when a worker process (forkserver) imports the main module
    main()
