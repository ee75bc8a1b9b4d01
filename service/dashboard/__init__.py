"""The web dashboard: studies, study and trial pages, and optuna-dashboard under /optuna."""
