from controller.ast_lock import install as _serialise_ast_parse

_serialise_ast_parse()  # before any of the controller's threads parse a program (controller.ast_lock)
