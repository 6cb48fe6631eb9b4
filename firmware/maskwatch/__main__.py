from maskwatch.cli import main

raise SystemExit(main())
