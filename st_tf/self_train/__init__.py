"""`--mode=self_train`: teacher -> pseudo labels -> student, in one run."""
