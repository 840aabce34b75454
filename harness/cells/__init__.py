"""One cell: white-box batch, black-box per sample, transfer; and the dispatch between them."""
