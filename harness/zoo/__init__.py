"""Where models and data come from: datasets, recipes, factories, substitutes."""
