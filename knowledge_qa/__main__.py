"""`python -m knowledge_qa …` = the `knowledge-qa` command."""

import sys

from knowledge_qa.cli import main

sys.exit(main())
