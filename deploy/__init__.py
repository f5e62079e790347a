"""Deploy targets behind one interface: `local` (this host) and `kubernetes` (rendered manifests).

`python -m deploy --help` lists the commands; the Makefile's deploy, smoke, rollback, down and
pipeline targets call them.
"""
