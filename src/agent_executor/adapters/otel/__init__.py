"""OpenTelemetry traces (CONTRACT section 11): the job span, the model and tool call
spans (a LangChain callback handler), the result publish span."""
