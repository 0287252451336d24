from framefarm.cli import main

raise SystemExit(main())
