"""RIS services: patients as the hospital registers them, orders and their worklist items."""
