"""What the tests share besides fixtures: databases, study definitions, running services
and records written the way the worker writes them."""
