"""`llmscisci predict`: label, extract, judge or write rationales over a whole table."""
