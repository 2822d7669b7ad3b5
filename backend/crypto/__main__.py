"""python -m backend.crypto generate-key | derived-key | status | rotate (see backend/crypto/rotation.py)."""

import sys

from backend.crypto.rotation import main

if __name__ == "__main__":  # importing the package's modules (the tenant-isolation test walks them) runs nothing
    sys.exit(main())
