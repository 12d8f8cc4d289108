"""The task API Lambdas: submit (``POST /v1alpha2``, ``POST /tasks``), status (``GET /tasks/{id}``) and
cancel (``DELETE /tasks/{id}``), thin handlers over the shared ``contract`` package.

Keep imports here light: the Lambda's cold start pays for every module this package pulls in.
"""
