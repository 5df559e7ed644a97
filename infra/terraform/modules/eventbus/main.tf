# The custom bus the relay also puts events on (SWITCHYARD_EVENTBRIDGE=all|matching),
# its routing rules (the relay reads their patterns back), and an archive for replay.

resource "aws_cloudwatch_event_bus" "this" {
  name = var.bus_name
}

resource "aws_cloudwatch_event_rule" "this" {
  for_each = var.rules

  name           = each.key
  description    = each.value.description
  event_bus_name = aws_cloudwatch_event_bus.this.name
  event_pattern  = each.value.event_pattern
}

resource "aws_cloudwatch_event_archive" "this" {
  name             = substr("${var.bus_name}-archive", 0, 48)
  description      = "Every event on ${var.bus_name}, for replay"
  event_source_arn = aws_cloudwatch_event_bus.this.arn
  retention_days   = var.archive_retention_days
}
