"""Quality and privacy measures, one per module, each comparing real rows with synthetic ones."""
