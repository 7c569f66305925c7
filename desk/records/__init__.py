"""The desk's rows and ledger: models, migrations, accounts, custody, submissions."""
