terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
  # One state per client and environment, e.g.:
  # backend "s3" { bucket = "<state bucket>", key = "switchyard/<client>/<environment>.tfstate", region = "<region>" }
}
