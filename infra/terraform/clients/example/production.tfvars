client                    = "example"
instance                  = "example-prod"
environment               = "production"
region                    = "eu-west-1"
results_bucket            = "example-prod-switchyard-results"
archive_retention_days    = 90
analytics_expiration_days = 90
results_expiration_days   = 400
