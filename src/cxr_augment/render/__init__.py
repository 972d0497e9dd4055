"""CT -> radiograph: the demo dataset's renderer (no Kedro here; usable from a notebook).

ct          HU to attenuation, the patient isolated, the render grid
projector   parallel-beam line integrals with patient yaw
findings    pneumothorax, effusion, cardiomegaly, opacity simulated in 3-D
atlas       everything 3-D done once: base projections, finding bank, landmarks
devices     tubes, lines, drains, pacemakers routed through the anatomy
radiograph  one image from the atlas: warp, noise, processing, window
overlay     burned-in markers, text, shutters
cohort      patients, studies, labels, truth and a render spec per image
export      the plan as CheXpert CSVs and the truth sidecar
"""
