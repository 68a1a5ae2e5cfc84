"""The trial's CRF as REDCap holds it: the data dictionary, REDCap's vocabulary, the contract
other systems rely on, the checks run before go-live, and deploying the project to REDCap."""
