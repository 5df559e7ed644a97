client                    = "example"
instance                  = "example-stg"
environment               = "staging"
region                    = "eu-west-1"
results_bucket            = "example-stg-switchyard-results"
archive_retention_days    = 7
analytics_expiration_days = 14
results_expiration_days   = 30
