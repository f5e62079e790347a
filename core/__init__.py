"""What every part shares and nothing else: settings, the model store and registry, YAML loading
and its errors, thresholds and gate verdicts, process helpers. Imports none of the parts."""
