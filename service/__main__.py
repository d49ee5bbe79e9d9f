import sys

from .cli import admin_main

sys.exit(admin_main())
