"""The deploy pipeline's steps after ``pulumi up``: run the migration task, then smoke-test the functions.

One module per concern: :mod:`.outputs` (the stack's outputs), :mod:`.ecs_task` (start, watch and
stop one ECS task), :mod:`.log_follower` (its CloudWatch Logs stream), :mod:`.migration` (the two
together, as ``lifeguard migrate`` runs them), :mod:`.invoke` and :mod:`.smoke` (the deployed
functions, as ``lifeguard smoke`` checks them), with :mod:`.aws` (clients and error wording),
:mod:`.clock` (time, replaceable in tests); relayed text is masked by the kit's one redactor, :mod:`redaction`,
and printed inert for CI (:mod:`.workflow_commands`).
"""
