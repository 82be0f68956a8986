"""One module per endpoint family; handlers parse, call the service and map the result."""
