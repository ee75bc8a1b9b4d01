"""The study domain, between the routes and the repository: definitions checked and
resolved, search spaces, stability rules, warm starts, fine-tuning, baselines, views,
exports, ratings and reproduction."""
