"""Judge calibration: agreement metrics between judge labels and gold labels."""
