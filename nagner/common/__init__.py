"""Helpers that every part of the project shares and that import nothing else of it.

* `errors`: `InputError`, bad user input with the file and line;
* `textfile`: reading UTF-8 text so that a bad byte names its file, line and column;
* `jsonl`: JSON lines read with line numbers, written atomically;
* `atomic`: output files and folders that appear whole or not at all;
* `encoders`: where a pretrained encoder's files are, and a fingerprint of its weights;
* `cli`: argument types and the error-to-exit-code rule of the command-line tools;
* `lazy_exports`: package names that load on first use.
* `modes`: a block run with a module in eval mode (switching only a training model).

The NER task (`nagner`), the adapter library (`nagner.peft`) and `knowledge_qa` stand on these;
the dependency contracts in ``pyproject.toml`` keep it that way.
"""
