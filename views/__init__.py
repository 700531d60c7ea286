"""Qt only: windows, widgets, Qt item models, dialogs. Calls services; never SQL, never HTTP."""
